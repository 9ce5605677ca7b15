"""Benchmark: per-step time of data-parallel training, HaiScale DDP vs torch DDP + gloo, in one run.

``python -m fireflyer.haiscale.bench`` (or ``haictl bench train``) starts ``--np`` ranks under mpirun;
each rank trains an MLP (``--model-mb`` of float32 parameters) in five modes, in turn:

- ``compute``: forward + backward + SGD step, no communication (the floor);
- ``haiscale``: HaiScale DDP, bucket allreduces started during backward (overlapped);
- ``haiscale-no-overlap``: the same buckets, all allreduces started after backward and waited for;
- ``haiscale-gloo``: HaiScale DDP overlapped, over the gloo process group instead of HFReduce;
- ``torch-ddp-gloo``: ``torch.nn.parallel.DistributedDataParallel`` with gloo, the peer.

Step 1 of each mode is skipped (torch DDP's first step uses a single bucket); medians are quoted.
``hidden`` = (no-overlap − overlapped) / (no-overlap − compute): the fraction of communication time
that overlapping removed from the step.
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
from torch import nn

from ffcommon.bench import Column, render_table

_MODES = ["compute", "haiscale", "haiscale-no-overlap", "haiscale-gloo", "torch-ddp-gloo"]


def _mlp(model_mb: float, layers: int) -> nn.Module:
    width = int(((model_mb * 1024 * 1024 / 4) / layers) ** 0.5)
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*mods)


def _worker(opts: dict) -> None:
    import torch.distributed as dist

    from fireflyer.haiscale._comm import HFReduceCommunicator, ProcessGroupCommunicator
    from fireflyer.haiscale._env import export_torch_env
    from fireflyer.haiscale.ddp import DistributedDataParallel

    torch.set_num_threads(opts["threads"])
    env = export_torch_env()
    dist.init_process_group("gloo", rank=env.rank, world_size=env.world_size)
    comm = HFReduceCommunicator() if opts["comm"] == "hfreduce" else ProcessGroupCommunicator()
    gloo_comm = ProcessGroupCommunicator()
    nets, opts_by_mode, inputs = {}, {}, {}
    for mode in _MODES:
        torch.manual_seed(0)
        model = _mlp(opts["model_mb"], opts["layers"])
        if mode == "compute":
            net: nn.Module = model
        elif mode == "torch-ddp-gloo":
            net = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=opts["bucket_cap_mb"])
        else:
            net = DistributedDataParallel(
                model,
                gloo_comm if mode == "haiscale-gloo" else comm,
                bucket_cap_mb=opts["bucket_cap_mb"],
                overlap=mode != "haiscale-no-overlap",
            )
        nets[mode] = net
        opts_by_mode[mode] = torch.optim.SGD(model.parameters(), lr=1e-6)
        inputs[mode] = torch.randn(opts["batch"], model[0].in_features)
    # Modes take turns step by step, so the machine's load drifts over all of them alike.
    times: dict[str, list[float]] = {m: [] for m in _MODES}
    for _ in range(opts["steps"] + 1):
        for mode in _MODES:
            dist.barrier()
            t0 = time.perf_counter()
            opts_by_mode[mode].zero_grad(set_to_none=False)
            nets[mode](inputs[mode]).square().mean().backward()
            opts_by_mode[mode].step()
            times[mode].append(time.perf_counter() - t0)
    for net in nets.values():
        if isinstance(net, DistributedDataParallel):
            net.close()
    rows = [{"mode": m, "step_s": times[m][1:]} for m in _MODES]
    dist.barrier()
    # Every rank's per-step times: the step of the job is the slowest rank's.
    gathered: list[list[dict] | None] = [None] * env.world_size
    dist.all_gather_object(gathered, rows)
    if env.rank == 0:
        out = []
        for i, mode in enumerate(_MODES):
            per_step = [max(g[i]["step_s"][s] for g in gathered) for s in range(opts["steps"])]  # type: ignore[index]
            out.append({"mode": mode, "median_s": statistics.median(per_step), "min_s": min(per_step)})
        params = sum(p.numel() for p in _mlp(opts["model_mb"], opts["layers"]).parameters())
        print(
            "BENCH_RESULT " + json.dumps({"rows": out, "comm": comm.name, "param_bytes": params * 4}),
            flush=True,
        )
    dist.barrier()
    dist.destroy_process_group()


def _table(res: dict, opts: dict) -> str:
    med = {r["mode"]: r["median_s"] for r in res["rows"]}
    lines = [
        f"# HaiScale DDP benchmark: np={opts['np']} MLP {res['param_bytes'] / 2**20:.1f} MiB fp32 "
        f"({opts['layers']} layers), batch {opts['batch']}, bucket {opts['bucket_cap_mb']} MiB, "
        f"{opts['steps']} steps (first skipped), HaiScale comm: {res['comm']}",
        f"# load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}",
    ]
    cols = [
        Column("mode", 22, "<"),
        Column("median ms", 11, fmt=".1f"),
        Column("min ms", 9, fmt=".1f"),
        Column("vs torch", 10, fmt=lambda x: f"{x:.2f}x"),
    ]
    rows = [
        [r["mode"], r["median_s"] * 1e3, r["min_s"] * 1e3, med["torch-ddp-gloo"] / r["median_s"]]
        for r in res["rows"]
    ]
    lines += render_table(cols, rows)
    comm_s = med["haiscale-no-overlap"] - med["compute"]
    if comm_s > 0:
        hidden = (med["haiscale-no-overlap"] - med["haiscale"]) / comm_s
        lines.append(
            f"communication (no-overlap − compute): {comm_s * 1e3:.1f} ms; hidden by overlap: {hidden:.0%}"
        )
    else:
        lines.append("communication time is within noise of compute: hidden fraction undefined")
    return "\n".join(lines)


def _default_comm() -> str:
    try:
        import hfreduce
    except ImportError:
        return "gloo"
    return "hfreduce" if hasattr(hfreduce, "allreduce") else "gloo"


@click.command("train")
@click.option("--np", "np_", default=2, show_default=True, help="Ranks (processes) on this machine.")
@click.option("--model-mb", default=32.0, show_default=True, help="Parameter size in MiB (float32).")
@click.option("--layers", default=8, show_default=True, help="Linear layers of the MLP.")
@click.option("--batch", default=256, show_default=True, help="Rows per rank per step.")
@click.option("--steps", default=8, show_default=True, help="Measured steps per mode (one more is run).")
@click.option("--bucket-cap-mb", default=8.0, show_default=True, help="Bucket size for both DDPs.")
@click.option("--threads", default=1, show_default=True, help="torch intra-op threads per rank.")
@click.option(
    "--comm",
    type=click.Choice(["hfreduce", "gloo"]),
    default=None,
    help="HaiScale's communicator [hfreduce].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw result as JSON.")
@click.option("--worker", hidden=True, default=None)
def click_command(np_, model_mb, layers, batch, steps, bucket_cap_mb, threads, comm, as_json, worker) -> None:
    """Per-step time: compute only, HaiScale overlapped / not, torch DDP + gloo; fraction hidden.

    \b
    Example:
      python -m fireflyer.haiscale.bench --np 2 --model-mb 32
      haictl bench train --np 4 --steps 5
    """
    opts = {
        "np": np_,
        "model_mb": model_mb,
        "layers": layers,
        "batch": batch,
        "steps": steps,
        "bucket_cap_mb": bucket_cap_mb,
        "threads": threads,
        "comm": comm or _default_comm(),
    }
    if worker is not None:
        _worker(json.loads(worker))
        return
    if shutil.which("mpirun") is None:
        raise click.ClickException("mpirun not found (apt-get install openmpi-bin)")
    from ffcommon.ports import free_port

    argv = ["mpirun", "-np", str(np_), "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        argv.append("--allow-run-as-root")
    argv += ["--mca", "btl", "self,vader,tcp", "-x", "MASTER_PORT", "-x", "MASTER_ADDR", "-x", "PYTHONPATH"]
    argv += [sys.executable, "-m", "fireflyer.haiscale.bench", "--worker", json.dumps(opts)]
    env = dict(os.environ, MASTER_PORT=str(free_port()), MASTER_ADDR="127.0.0.1")
    env.setdefault("PYTHONPATH", os.getcwd())
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise click.ClickException(
            f"benchmark ranks failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    res = json.loads(line[len("BENCH_RESULT ") :])
    click.echo(json.dumps(res) if as_json else _table(res, opts))


if __name__ == "__main__":
    click_command()
