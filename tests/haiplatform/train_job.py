"""Deterministic data-parallel training job for the preemption tests (torch.distributed on gloo).

Usage: python train_job.py STEPS STEP_S OUT_FILE. Checkpoints to ./ckpt.pt every 5 steps and when
rank 0 receives the suspend command (then every rank calls go_suspend()); on start it resumes from
./ckpt.pt if present. Rank 0 writes the final parameters to OUT_FILE (JSON, exact float64 values).
"""

import datetime
import json
import os
import sys
import time

import torch
import torch.distributed as dist

steps, step_s, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
in_job = "HAI_JOB_ID" in os.environ
if in_job:
    from haiplatform import job as hai_job
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
ckpt = "ckpt.pt"


def save(step: int, w: torch.Tensor) -> None:
    tmp = f"{ckpt}.tmp"
    torch.save({"step": step, "w": w}, tmp)
    os.replace(tmp, ckpt)
    print(f"checkpoint at step {step}", flush=True)


w = torch.zeros(32, dtype=torch.float64)
start = 0
if os.path.exists(ckpt):
    state = torch.load(ckpt)
    start, w = state["step"], state["w"]
    print(f"resumed from step {start}", flush=True)
for step in range(start, steps):
    flag = torch.tensor([1 if (in_job and rank == 0 and hai_job.receive_suspend_command()) else 0])
    dist.broadcast(flag, 0)
    if flag.item():
        if rank == 0:
            save(step, w)
        dist.barrier()
        print(f"suspending at step {step}", flush=True)
        hai_job.go_suspend()
    gen = torch.Generator().manual_seed(step * 1000 + rank)
    x = torch.randn(32, generator=gen, dtype=torch.float64)
    g = (w - x) * (1.0 + 0.5 * rank)
    dist.all_reduce(g)
    w -= 0.1 * g / world
    if rank == 0 and step % 5 == 4:
        save(step + 1, w)
    print(f"step {step} loss {float((w * w).sum()):.6f}", flush=True)
    time.sleep(step_s)
if rank == 0:
    with open(out, "w") as f:
        json.dump([float(v).hex() for v in w], f)
    print("done", flush=True)
dist.destroy_process_group()
