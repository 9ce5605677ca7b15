"""One rank of the demo training job: HaiScale DDP on HFReduce, data from fs3, checkpoints to fs3.

Run by the node agents with the launch environment (RANK, WORLD_SIZE, MASTER_ADDR, ...). Follows
the HAI-Platform protocol: rank 0 polls ``receive_suspend_command()`` each step and shares the
answer with every rank; then rank 0 checkpoints to fs3 and every rank calls ``go_suspend()``. A
(re)started run resumes from the checkpoint, so the final parameters do not depend on preemption.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from torch import nn

import hfreduce
from fireflyer.demo.data import CLASSES, FEATURES, decode
from fireflyer.haiscale import DistributedDataParallel
from fs3.checkpoint import load_state_dict, save_state_dict
from fs3.client import FS3Client
from fs3.dataset import PackedReader


def build_model(seed: int) -> nn.Module:
    """The demo's classifier; the same seed gives the same initial weights on every rank."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(FEATURES, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, CLASSES)
    )


def batch_indices(step: int, rank: int, world: int, batch: int, n_train: int, seed: int) -> np.ndarray:
    """This rank's share of the global batch of ``step``: fixed by (seed, step), not by history."""
    rng = np.random.default_rng([seed, step])
    idx = rng.choice(n_train, batch, replace=False)
    return np.sort(idx[rank::world])


def allreduce_gbps(nbytes: int = 32 << 20, iters: int = 5) -> tuple[float, float]:
    """Median (algbw, busbw) in GB/s of HFReduce allreduces of ``nbytes`` float32 in shared memory."""
    buf = hfreduce.zeros(nbytes // 4, np.float32)
    hfreduce.allreduce(buf)
    times = []
    for _ in range(iters):
        hfreduce.barrier()
        t0 = time.perf_counter()
        hfreduce.allreduce(buf)
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    n = hfreduce.get_world_size()
    algbw = nbytes / t / 1e9
    return algbw, algbw * 2 * (n - 1) / n


def main(argv: list[str] | None = None) -> int:
    """Train; print progress; rank 0 writes the result JSON to fs3 at the end."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mgmtd", default=os.environ.get("FS3_MGMTD"), help="fs3 cluster manager host:port")
    p.add_argument("--data", default="/demo/train.ffr", help="packed data set on fs3")
    p.add_argument("--ckpt", default="/demo/ckpt.pt", help="checkpoint path on fs3")
    p.add_argument("--result", default="/demo/result.json", help="where rank 0 writes the result on fs3")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=256, help="global batch (split over ranks)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--ckpt-every", type=int, default=25)
    p.add_argument(
        "--min-step-s", type=float, default=0.0,
        help="pace each step to at least this long, as a real model's compute would (the demo uses it so "
        "that its preemption lands mid-run however fast this machine trains the toy model)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.mgmtd:
        p.error("--mgmtd or FS3_MGMTD is required")
    torch.set_num_threads(1)
    in_job = "HAI_JOB_ID" in os.environ
    if in_job:
        from haiplatform import job as hai

    hfreduce.init()
    rank, world = hfreduce.get_rank(), hfreduce.get_world_size()
    fs = FS3Client(args.mgmtd)
    reader = PackedReader.open(args.data, client=fs)
    n = len(reader)
    n_train = n - n // 8  # the last eighth is held out for the accuracy at the end

    model = DistributedDataParallel(build_model(args.seed))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    start = 0
    if fs.exists(args.ckpt):
        state = load_state_dict(args.ckpt, client=fs)
        model.module.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
        print(f"rank {rank}: resumed from checkpoint at step {start}", flush=True)

    def checkpoint(step: int) -> None:
        if rank == 0:
            stats = save_state_dict({"model": model.module.state_dict(), "opt": opt.state_dict(), "step": step},
                                    args.ckpt, client=fs)  # fmt: skip
            print(f"checkpoint at step {step} ({stats.gbps:.2f} GB/s to fs3)", flush=True)
        hfreduce.barrier()

    flag = np.zeros(1, np.float32)
    loss_value = float("nan")
    t_start = time.perf_counter()
    for step in range(start, args.steps):
        t_step = time.perf_counter()
        flag[0] = 1.0 if (in_job and rank == 0 and hai.receive_suspend_command()) else 0.0
        hfreduce.broadcast(flag, root=0)
        if flag[0]:
            checkpoint(step)
            print(f"rank {rank}: suspending at step {step}", flush=True)
            hai.go_suspend()
        x, y = decode(
            reader.read_batch(batch_indices(step, rank, world, args.batch, n_train, args.seed).tolist())
        )
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x.copy())), torch.from_numpy(y.copy()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = float(loss)
        if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"step {step} loss {loss_value:.4f}", flush=True)
        if (step + 1) % args.ckpt_every == 0 and step + 1 < args.steps:
            checkpoint(step + 1)
        if args.min_step_s:
            time.sleep(max(0.0, args.min_step_s - (time.perf_counter() - t_step)))
    train_s = time.perf_counter() - t_start

    algbw, busbw = allreduce_gbps()
    if rank == 0:
        x, y = decode(reader.read_batch(list(range(n_train, n))))
        with torch.no_grad():
            acc = float((model.module(torch.from_numpy(x.copy())).argmax(1).numpy() == y).mean())
        digest = float(sum(p.double().abs().sum() for p in model.module.parameters()))
        result = {"steps": args.steps, "resumed_from": start, "world_size": world, "nodes": hfreduce.get_num_nodes(),
                  "final_loss": loss_value, "heldout_accuracy": acc, "param_abs_sum": digest,
                  "allreduce_32MiB_algbw_gbps": algbw, "allreduce_32MiB_busbw_gbps": busbw,
                  "train_s_this_run": train_s}  # fmt: skip
        with fs.open(args.result, "wb") as f:
            f.write(json.dumps(result, indent=2).encode())
        print("result " + json.dumps(result), flush=True)
    hfreduce.barrier()
    model.close()
    hfreduce.finalize()
    fs.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
