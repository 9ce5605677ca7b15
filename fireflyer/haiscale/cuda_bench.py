"""Benchmark of HaiScale's CUDA staging (needs an NVIDIA GPU and ``FIREFLYER_CUDA=1`` build).

``python -m fireflyer.haiscale.cuda_bench`` prints two tables:

- **copies** (this process): D2H and H2D GB/s into a page-aligned slice of HFReduce's shared segment
  pinned with ``cudaHostRegister`` (our ``Stager``, one chunk and ``--chunk-mb`` chunks), against
  torch's own pinned (``pin_memory=True``) and pageable host tensors;
- **allreduce** (``--np`` ranks on this machine, all on one GPU; mpirun if present, else spawned here):
  per size, the staged allreduce (chunk-pipelined, and as one chunk), HFReduce on a host buffer alone
  (the CPU floor), and torch.distributed gloo with CUDA tensors; ``algbw`` = bytes / time, ``busbw`` =
  algbw · 2(n−1)/n as in nccl-tests. Each result is checked against the expected sum.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import click
import torch

from ffcommon.bench import Column, render_table

_MiB = 1024 * 1024


def _require_gpu() -> object:
    from fireflyer.haiscale.cuda import CudaUnavailableError, _cuda_module

    try:
        cu = _cuda_module()
    except CudaUnavailableError as exc:
        raise click.ClickException(f"this benchmark needs an NVIDIA GPU and hfreduce._cuda: {exc}") from exc
    if not torch.cuda.is_available():
        raise click.ClickException(
            f"torch {torch.__version__} cannot use the GPU (torch.cuda.is_available() is False); "
            "the benchmark compares against torch's CUDA copies and needs a CUDA build of torch"
        )
    return cu


def _time(fn: object, iters: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` (which must leave the GPU idle when it returns)."""
    for _ in range(warmup):
        fn()  # type: ignore[operator]
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _copies(sizes_mb: list[float], chunk_mb: float, iters: int) -> list[dict]:
    import hfreduce

    cu = _require_gpu()
    largest = int(max(sizes_mb) * _MiB)
    os.environ.setdefault("HFREDUCE_SHM_HEAP_BYTES", str(max(1 << 30, 2 * largest + (64 << 20))))
    hfreduce.init()
    stager = cu.Stager(torch.cuda.current_device())  # type: ignore[attr-defined]
    return [_copy_row(cu, stager, hfreduce, int(mb * _MiB) // 16 * 16, chunk_mb, iters) for mb in sizes_mb]


def _copy_row(cu: object, stager: object, hf: object, nbytes: int, chunk_mb: float, iters: int) -> dict:
    from fireflyer.haiscale.cuda import HostBuffer

    d = torch.randn(nbytes // 4, device=torch.device("cuda", torch.cuda.current_device()))
    host = HostBuffer(cu, nbytes, hf)
    hview = host.view(torch.float32, nbytes // 4)

    def stage(chunk: int, h2d: bool) -> None:
        stream = torch.cuda.current_stream().cuda_stream
        tr = stager.begin(d.data_ptr(), host.ptr, nbytes, chunk, stream)  # type: ignore[attr-defined]
        for i in range(tr.num_chunks):
            tr.wait_d2h(i)
            if h2d:
                tr.start_h2d(i)
        tr.finish()
        tr.synchronize()

    def tcopy(dst: torch.Tensor, src: torch.Tensor) -> None:
        dst.copy_(src, non_blocking=True)
        torch.cuda.synchronize()

    torch.cuda.synchronize()
    t_d2h = _time(lambda: stage(nbytes, False), iters)
    t_d2h_chunked = _time(lambda: stage(int(chunk_mb * _MiB), False), iters)
    t_round = _time(lambda: stage(nbytes, True), iters)
    assert torch.equal(hview, d.cpu()), "staged D2H copy differs from the device data"
    pinned = torch.empty(nbytes // 4, pin_memory=True)
    pageable = torch.empty(nbytes // 4)
    row = {
        "size_bytes": nbytes,
        "host_kind": host.kind,
        "stager_d2h_gbps": nbytes / t_d2h / 1e9,
        f"stager_d2h_{chunk_mb:g}mib_chunks_gbps": nbytes / t_d2h_chunked / 1e9,
        "stager_h2d_gbps": nbytes / max(t_round - t_d2h, 1e-9) / 1e9,
        "torch_pinned_d2h_gbps": nbytes / _time(lambda: tcopy(pinned, d), iters) / 1e9,
        "torch_pinned_h2d_gbps": nbytes / _time(lambda: tcopy(d, pinned), iters) / 1e9,
        "torch_pageable_d2h_gbps": nbytes / _time(lambda: tcopy(pageable, d), iters) / 1e9,
        "torch_pageable_h2d_gbps": nbytes / _time(lambda: tcopy(d, pageable), iters) / 1e9,
    }
    host.release()
    return row


def _allreduce_worker(opts: dict) -> None:
    """One rank: torch.distributed (gloo) first, so hfreduce bootstraps through it."""
    import torch.distributed as dist

    for ours, theirs in (("RANK", "OMPI_COMM_WORLD_RANK"), ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE")):
        if ours not in os.environ and theirs in os.environ:
            os.environ[ours] = os.environ[theirs]
    dist.init_process_group("gloo")
    import hfreduce
    from fireflyer.haiscale.cuda import CudaStaging

    _require_gpu()
    hfreduce.init()
    dev = torch.device("cuda", 0)
    torch.cuda.set_device(dev)
    piped = CudaStaging(dev, chunk_bytes=int(opts["chunk_mb"] * _MiB))
    whole = CudaStaging(dev, chunk_bytes=1 << 40)  # one chunk: no copy/reduce overlap
    rows = []
    for mb in opts["sizes_mb"]:
        rows += _allreduce_rows(
            dist, hfreduce, {"staged": piped, "staged-1chunk": whole}, int(mb * _MiB) // 4, opts
        )
    piped.close()
    whole.close()
    if dist.get_rank() == 0:
        print("BENCH_RESULT " + json.dumps({"world_size": dist.get_world_size(), "rows": rows}), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def _allreduce_rows(dist: object, hf: object, stagings: dict, n: int, opts: dict) -> list[dict]:
    rank, world = dist.get_rank(), dist.get_world_size()  # type: ignore[attr-defined]
    t = torch.empty(n, device=torch.device("cuda", 0))
    host = hf.empty(n, torch.float32)  # type: ignore[attr-defined]
    expect = world * (world + 1) / 2

    def run(kind: str) -> float:
        times = []
        for it in range(opts["iters"] + 2):
            t.fill_(rank + 1)
            host.fill_(rank + 1)
            torch.cuda.synchronize()
            dist.barrier()  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            if kind in stagings:
                stagings[kind].allreduce_async(t).wait()
                torch.cuda.synchronize()
            elif kind == "gloo-cuda":
                dist.all_reduce(t)  # type: ignore[attr-defined]
                torch.cuda.synchronize()
            else:  # hfreduce-host: the CPU part alone, on a shared-segment buffer
                hf.allreduce(host)  # type: ignore[attr-defined]
            if it >= 2:
                times.append(time.perf_counter() - t0)
            got = host if kind == "hfreduce-host" else t
            if not bool((got == expect).all()):
                raise RuntimeError(
                    f"rank {rank}: {kind} of {n} floats gave {got[:4].tolist()}, expected {expect}"
                )
        return statistics.median(times)

    rows = []
    for kind in (*stagings, "hfreduce-host", "gloo-cuda"):
        try:
            sec = run(kind)
        except RuntimeError as exc:
            if kind != "gloo-cuda":
                raise
            rows.append({"size_bytes": n * 4, "mode": kind, "error": str(exc)[:200]})
            continue
        algbw = n * 4 / sec / 1e9
        rows.append(
            {
                "size_bytes": n * 4,
                "mode": kind,
                "time_ms": sec * 1e3,
                "algbw_gbps": algbw,
                "busbw_gbps": algbw * 2 * (world - 1) / world,
            }
        )
    return rows


def _run_ranks(np_: int, opts: dict, use_mpirun: bool) -> dict:
    from ffcommon.ports import free_port

    env = dict(os.environ, MASTER_PORT=str(free_port()), MASTER_ADDR="127.0.0.1")
    env.setdefault("PYTHONPATH", os.getcwd())
    env.setdefault(
        "HFREDUCE_SHM_HEAP_BYTES", str(max(1 << 30, int(3 * max(opts["sizes_mb"]) * _MiB) + (64 << 20)))
    )
    cmd = [sys.executable, "-m", "fireflyer.haiscale.cuda_bench", "--worker", json.dumps(opts)]
    if use_mpirun:
        argv = ["mpirun", "-np", str(np_), "--oversubscribe", "--bind-to", "none"]
        if os.geteuid() == 0:
            argv.append("--allow-run-as-root")
        argv += [
            "-x",
            "MASTER_PORT",
            "-x",
            "MASTER_ADDR",
            "-x",
            "PYTHONPATH",
            "-x",
            "HFREDUCE_SHM_HEAP_BYTES",
        ]
        procs = [
            subprocess.Popen(
                [*argv, *cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        ]
    else:
        procs = [
            subprocess.Popen(
                cmd,
                env=dict(env, RANK=str(r), WORLD_SIZE=str(np_), LOCAL_RANK=str(r)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in range(np_)
        ]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=opts["timeout_s"])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise click.ClickException(f"benchmark ranks still running after {opts['timeout_s']} s") from None
        outs.append((p.returncode, out, err))
    line = next((ln for _, o, _ in outs for ln in o.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if any(rc != 0 for rc, _, _ in outs) or line is None:
        detail = "".join(f"--- rc {rc}\n{o[-2000:]}{e[-3000:]}" for rc, o, e in outs)
        raise click.ClickException(f"benchmark ranks failed:\n{detail}")
    return json.loads(line[len("BENCH_RESULT ") :])


def _fmt_copies(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if k.endswith("_gbps")]
    cols = [
        Column("size", 12),
        Column("host", 6),
        *(Column(k.removesuffix("_gbps"), 24, fmt=".2f") for k in keys),
    ]
    cells = [[r["size_bytes"], r["host_kind"], *(r[k] for k in keys)] for r in rows]
    return "\n".join(["# copies, GB/s (median)", *render_table(cols, cells, gap=" ")])


def _fmt_allreduce(res: dict) -> str:
    cols = [Column("size", 12), Column("mode", 14), Column("time_ms", 10, fmt=".3f"),
            Column("algbw", 8, fmt=".2f"), Column("busbw", 8, fmt=".2f")]  # fmt: skip
    lines = [
        f"# allreduce, {res['world_size']} ranks on one GPU (float32, median)",
        *render_table(cols, [], gap=" "),
    ]
    for r in res["rows"]:  # row by row: a failed size keeps its place, its error after size and mode
        if "error" in r:
            head = render_table(cols[:2], [[r["size_bytes"], r["mode"]]], gap=" ", header=False)[0]
            lines.append(f"{head}  failed: {r['error']}")
        else:
            cells = [r["size_bytes"], r["mode"], r["time_ms"], r["algbw_gbps"], r["busbw_gbps"]]
            lines += render_table(cols, [cells], gap=" ", header=False)
    return "\n".join(lines)


@click.command("cuda")
@click.option(
    "--sizes-mb", default="4,64,256", show_default=True, help="Comma-separated buffer sizes in MiB."
)
@click.option("--chunk-mb", default=4.0, show_default=True, help="Staging chunk (pipeline grain) in MiB.")
@click.option("--iters", default=10, show_default=True, help="Measured repetitions (two more warm up).")
@click.option("--np", "np_", default=2, show_default=True, help="Ranks for the allreduce table (0: skip it).")
@click.option("--launcher", type=click.Choice(["auto", "mpirun", "spawn"]), default="auto", show_default=True)
@click.option("--timeout-s", default=300, show_default=True, help="Give up on the ranks after this long.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw results as JSON.")
@click.option("--worker", hidden=True, default=None)
def click_command(
    sizes_mb: str,
    chunk_mb: float,
    iters: int,
    np_: int,
    launcher: str,
    timeout_s: int,
    as_json: bool,
    worker: str | None,
) -> None:
    """D2H/H2D GB/s of the pinned shared-segment staging vs torch; staged allreduce vs gloo on CUDA tensors.

    \b
    Example:
      python -m fireflyer.haiscale.cuda_bench --sizes-mb 4,64,256 --np 2
      python -m fireflyer.haiscale.cuda_bench --np 0 --json
    """
    if worker is not None:
        _allreduce_worker(json.loads(worker))
        return
    sizes = [float(s) for s in sizes_mb.split(",") if s.strip()]
    opts = {"sizes_mb": sizes, "chunk_mb": chunk_mb, "iters": iters, "timeout_s": timeout_s}
    _require_gpu()
    copies = _copies(sizes, chunk_mb, iters)
    allreduce = None
    if np_ > 0:
        use_mpirun = launcher == "mpirun" or (launcher == "auto" and shutil.which("mpirun") is not None)
        allreduce = _run_ranks(np_, opts, use_mpirun)
    if as_json:
        click.echo(json.dumps({"copies": copies, "allreduce": allreduce}))
        return
    click.echo(_fmt_copies(copies))
    if allreduce is not None:
        click.echo("")
        click.echo(_fmt_allreduce(allreduce))


if __name__ == "__main__":
    click_command()
