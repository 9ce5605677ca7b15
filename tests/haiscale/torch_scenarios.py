"""One rank of a HaiScale-in-stock-torch scenario (comm hook, "hfreduce" backend), run under mpirun.

Each rank prints one ``TORCHSCEN {json}`` line describing what it saw.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import threading

import torch
import torch.distributed as dist
from torch import nn

from fireflyer.haiscale import hfreduce_hook
from fireflyer.haiscale._env import export_torch_env
from fireflyer.haiscale.train_example import make_model, train


def report(**kw: object) -> None:
    print("TORCHSCEN " + json.dumps(kw), flush=True)


def comm_hook(args: argparse.Namespace, rank: int) -> None:
    """Stock DDP + default hook vs stock DDP + hfreduce_hook, same seed and batches: same parameters."""
    dist.init_process_group("gloo", rank=rank, world_size=int(os.environ["WORLD_SIZE"]))
    ex = argparse.Namespace(steps=args.steps, batch=8, lr=0.05, seed=1234, grad_quantum_bits=0)
    ref = make_model(ex)
    ref_ddp = nn.parallel.DistributedDataParallel(ref, bucket_cap_mb=0.01)
    train(ref_ddp, list(ref.parameters()), ex, rank)

    ours = make_model(ex)
    ddp = nn.parallel.DistributedDataParallel(ours, bucket_cap_mb=0.01)
    calls = {"n": 0, "threads": set(), "pending_at_return": 0}

    def counting_hook(state, bucket):  # unannotated: DDP checks annotations as objects
        calls["n"] += 1
        fut = hfreduce_hook(state, bucket)
        calls["pending_at_return"] += int(not fut.done())
        fut.then(lambda f: calls["threads"].add(threading.current_thread().name))
        return fut

    ddp.register_comm_hook(state=None, hook=counting_hook)
    train(ddp, list(ours.parameters()), ex, rank)

    unequal = [
        n
        for (n, a), b in zip(ref.named_parameters(), ours.parameters(), strict=True)
        if not torch.equal(a, b)
    ]
    report(
        rank=rank,
        bit_equal=not unequal,
        unequal=unequal,
        hook_calls=calls["n"],
        completer_threads=sorted(calls["threads"]),
        pending_at_return=calls["pending_at_return"],
    )
    del ddp, ref_ddp
    dist.destroy_process_group()


def backend(args: argparse.Namespace, rank: int) -> None:
    """init_process_group(backend="hfreduce"), then all_reduce/broadcast/reduce/barrier and unsupported ops."""
    import fireflyer.haiscale  # noqa: F401 - registers the "hfreduce" backend

    world = int(os.environ["WORLD_SIZE"])
    dist.init_process_group("hfreduce", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30))
    out: dict[str, object] = {"rank": rank, "backend": dist.get_backend()}

    t = torch.full((1000,), float(rank + 1))
    dist.all_reduce(t)
    out["sum_ok"] = bool(torch.all(t == sum(range(1, world + 1))))

    t = torch.arange(17, dtype=torch.float32) * (rank + 1)
    dist.all_reduce(t, op=dist.ReduceOp.AVG)
    out["avg_ok"] = bool(torch.allclose(t, torch.arange(17, dtype=torch.float32) * (world + 1) / 2))

    halves = torch.full((33,), 0.5 * (rank + 1), dtype=torch.bfloat16)
    w = dist.all_reduce(halves, async_op=True)
    w.wait()
    out["async_bf16_ok"] = bool(torch.all(halves == 0.5 * sum(range(1, world + 1))))

    b = torch.randn(4096, generator=torch.Generator().manual_seed(rank))
    dist.broadcast(b, src=1)
    out["broadcast_ok"] = bool(torch.equal(b, torch.randn(4096, generator=torch.Generator().manual_seed(1))))

    r = torch.full((8,), float(rank + 1))
    dist.reduce(r, dst=0)
    out["reduce_ok"] = bool(torch.all(r == (sum(range(1, world + 1)) if rank == 0 else rank + 1)))

    dist.barrier()
    out["barrier_ok"] = True

    errors: dict[str, str] = {}
    try:
        dist.all_reduce(torch.ones(4), op=dist.ReduceOp.MAX)
    except Exception as exc:
        errors["max"] = f"{type(exc).__name__}: {exc}"
    try:
        dist.send(torch.ones(4), dst=(rank + 1) % world)
    except Exception as exc:
        errors["send"] = f"{type(exc).__name__}: {exc}"
    gathered = [torch.zeros(4, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(gathered, torch.full((4,), rank, dtype=torch.int64))
    out["all_gather_ok"] = all(bool(torch.all(g == r)) for r, g in enumerate(gathered))
    out["errors"] = errors

    t = torch.ones(5)
    dist.all_reduce(t)  # still usable after the refused calls
    out["after_errors_ok"] = bool(torch.all(t == world))
    report(**out)
    dist.destroy_process_group()


SCENARIOS = {"comm_hook": comm_hook, "backend": backend}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    env = export_torch_env()
    SCENARIOS[args.scenario](args, env.rank)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
