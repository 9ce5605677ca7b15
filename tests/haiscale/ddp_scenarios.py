"""One rank of a HaiScale DDP failure/edge-case scenario, run under mpirun by test_ddp_errors.py.

Each rank prints one ``SCENARIO {json}`` line describing what happened to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn

from fireflyer.haiscale import (
    BackwardIncompleteError,
    CommunicationError,
    DistributedDataParallel,
    HFReduceCommunicator,
    ProcessGroupCommunicator,
    UnusedParametersError,
)
from fireflyer.haiscale._env import export_torch_env


def report(**kw: object) -> None:
    print("SCENARIO " + json.dumps(kw), flush=True)


def make_comm(name: str, timeout_s: float):
    if name == "hfreduce":
        return HFReduceCommunicator(timeout_s=timeout_s)
    return ProcessGroupCommunicator(timeout_s=timeout_s)


class Branchy(nn.Module):
    """``a`` always used, ``b`` used only on rank 0, ``c`` never used."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, use_b: bool) -> torch.Tensor:
        y = torch.tanh(self.a(x))
        if use_b:
            y = y + self.b(y)
        return y


def raise_in_backward(args: argparse.Namespace, rank: int) -> int:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    ddp = DistributedDataParallel(
        model, make_comm(args.comm, args.timeout_s), bucket_cap_mb=0.0005, first_bucket_cap_mb=0.0005
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(4):
        x = torch.randn(4, 16)
        out = ddp(x)
        if rank == 1 and step == 2:

            def boom(g: torch.Tensor) -> torch.Tensor:
                raise RuntimeError("injected failure inside backward on rank 1")

            model[0].weight.register_hook(boom)
        t0 = time.monotonic()
        try:
            out.sum().backward()
            opt.step()
        except RuntimeError as exc:
            elapsed = time.monotonic() - t0
            after = None
            try:
                ddp(x)
            except (CommunicationError, BackwardIncompleteError) as exc2:
                after = type(exc2).__name__
            report(
                rank=rank,
                step=step,
                error=type(exc).__name__,
                message=str(exc)[:300],
                elapsed_s=round(elapsed, 2),
                next_forward=after,
            )
            if rank == 1:
                # Stay alive but silent: the peers must time out, not notice a closed socket.
                time.sleep(args.linger_s)
            return 0
    report(rank=rank, step=None, error=None)
    return 0


def unused_strict(args: argparse.Namespace, rank: int) -> int:
    torch.manual_seed(0)
    model = Branchy()
    ddp = DistributedDataParallel(model, make_comm(args.comm, args.timeout_s))
    x = torch.randn(4, 8)
    try:
        ddp(x, use_b=True).sum().backward()
    except UnusedParametersError as exc:
        again = None
        try:
            ddp(x, use_b=True)
        except UnusedParametersError:
            again = "UnusedParametersError"
        report(rank=rank, error="UnusedParametersError", message=str(exc), next_forward=again)
        return 0
    report(rank=rank, error=None)
    return 0


def unused_find(args: argparse.Namespace, rank: int) -> int:
    results = {}
    for impl in ("torch", "haiscale"):
        torch.manual_seed(0)
        model = Branchy()
        if impl == "torch":
            ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        else:
            ddp = DistributedDataParallel(
                model, make_comm(args.comm, args.timeout_s), find_unused_parameters=True
            )
        opt = torch.optim.SGD(model.parameters(), lr=0.25, momentum=0.5)
        for step in range(5):
            g = torch.Generator().manual_seed(100 * step + rank)
            x = torch.randn(4, 8, generator=g)
            opt.zero_grad(set_to_none=True)
            ddp(x, use_b=(rank == 0)).sum().backward()
            opt.step()
        results[impl] = (
            [p.detach().clone() for p in model.parameters()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        )
    (tp, tg), (hp, hg) = results["torch"], results["haiscale"]
    params_equal = all(torch.equal(a, b) for a, b in zip(tp, hp, strict=True))
    grads_none_match = [a is None for a in tg] == [b is None for b in hg]
    grads_equal = all(a is None or torch.equal(a, b) for a, b in zip(tg, hg, strict=True))
    report(
        rank=rank,
        params_equal=params_equal,
        grads_none_match=grads_none_match,
        grads_equal=grads_equal,
        none_grads=[a is None for a in hg],
    )
    return 0


SCENARIOS = {
    "raise_in_backward": raise_in_backward,
    "unused_strict": unused_strict,
    "unused_find": unused_find,
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--comm", choices=["hfreduce", "gloo"], default="hfreduce")
    ap.add_argument("--timeout-s", type=float, default=5.0)
    ap.add_argument("--linger-s", type=float, default=15.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = export_torch_env()
    assert "MASTER_PORT" in os.environ
    import datetime

    dist.init_process_group(
        "gloo",
        rank=env.rank,
        world_size=env.world_size,
        timeout=datetime.timedelta(seconds=max(args.timeout_s, 30)),
    )
    rc = SCENARIOS[args.scenario](args, env.rank)
    sys.stdout.flush()
    os._exit(rc)  # do not let a half-failed process group hang the interpreter's shutdown


if __name__ == "__main__":
    main()
