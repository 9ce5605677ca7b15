"""A complete HAI-Platform job: data from fs3, HFReduce data parallelism, checkpoints to fs3, preemptible.

Run by ``haictl submit`` (see docs/JOBS.md, which explains every step), e.g.::

    haictl fs mkdir -p /jobs && haictl fs pack ./samples fs3:/jobs/data.pack
    haictl submit --name example --ranks-per-node 2 -- python docs/examples/train_job.py --data /jobs/data.pack

Each sample of the packed file is 17 float32 values: 16 features and a regression target.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

import hfreduce
from fireflyer.haiscale import DistributedDataParallel, checkpoint
from fs3.client import FS3Client
from fs3.dataset import PackedReader
from haiplatform import job as hai


def main() -> int:
    """Train ``--steps`` steps, resuming from this job's checkpoint if a previous run left one."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="/jobs/data.pack", help="packed data set on fs3")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--step-s", type=float, default=0.05, help="pace steps as a real model's compute would")
    args = p.parse_args()

    # Where fs3 is: FS3_MGMTD always; FS3_MOUNT when this node has the file system mounted.
    fs = FS3Client(os.environ["FS3_MGMTD"])
    mount = os.environ.get("FS3_MOUNT")
    data = PackedReader.open(mount + args.data) if mount else PackedReader.open(args.data, client=fs)
    ckpt = f"/jobs/ckpt-{os.environ['HAI_JOB_ID']}.pt"  # one per job: every run of this job finds it

    hfreduce.init()  # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT... come from the job's environment
    rank, world = hfreduce.get_rank(), hfreduce.get_world_size()
    print(f"rank {rank}: {len(data)} samples through {'the mount ' + mount if mount else 'the fs3 client'}")
    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Linear(16, 1))  # gradients allreduced by HFReduce
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    start = 0
    if os.environ["HAI_RESUMED"] == "1" and fs.exists(ckpt):  # a later run: after a suspend or a requeue
        start = checkpoint.load(ckpt, model.module, opt, client=fs)["step"]
        print(f"rank {rank}: resumed at step {start}", flush=True)

    flag = np.zeros(1, np.float32)
    pending, loss = None, torch.tensor(float("nan"))
    for step in range(start, args.steps):
        t0 = time.perf_counter()
        # Only rank 0 may ask whether the scheduler wants the job to suspend; broadcast the answer so
        # that every rank leaves at the same step.
        flag[0] = 1.0 if rank == 0 and hai.receive_suspend_command() else 0.0
        hfreduce.broadcast(flag, root=0)
        if flag[0]:
            if pending is not None:
                pending.wait()
            checkpoint.save_async(ckpt, model.module, opt, {"step": step}, client=fs).wait()
            hfreduce.barrier()  # the checkpoint is in place before any rank leaves
            print(f"rank {rank}: suspending at step {step}", flush=True)
            hai.go_suspend()  # never returns: the agent stops the job; a resume re-runs this command

        rows = [(step * world + rank + k * world) % len(data) for k in range(8)]
        xy = np.frombuffer(b"".join(data.read_batch(rows)), np.float32).reshape(-1, 17)
        x, y = torch.from_numpy(xy[:, :16].copy()), torch.from_numpy(xy[:, 16:].copy())
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if rank == 0 and step % 20 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
        if (step + 1) % args.ckpt_every == 0:  # periodic: snapshot now, write while training goes on
            if pending is not None:
                pending.wait()
            pending = checkpoint.save_async(ckpt, model.module, opt, {"step": step + 1}, client=fs)
        time.sleep(max(0.0, args.step_s - (time.perf_counter() - t0)))

    if pending is not None:
        pending.wait()
    if rank == 0:
        print(f"done: {args.steps} steps on {world} ranks, final loss {loss.item():.4f}", flush=True)
    hfreduce.barrier()
    model.close()
    hfreduce.finalize()
    fs.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
