"""One rank of a fault test of HFReduce inside stock torch: ``python fault_scenarios.py backend|hook``.

Started by tests/haiscale/test_torch_faults.py with RANK/WORLD_SIZE/MASTER_* set (not mpirun: it tears
the job down once one rank dies). In one world: a size and a dtype mismatch (every rank raises, the
ranks stay in step), then rank HFR_VICTIM is killed (HFR_FAULT=sigkill) or stopped (sigstop) in the
middle of an allreduce; the survivors record what they raised and when, try one more call, and leave
the error unhandled, so they exit non-zero. Reports: $HFR_OUT/faults-<rank>.json.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import time

import torch
import torch.distributed as dist
from torch import nn

import fireflyer.haiscale  # noqa: F401 - registers the "hfreduce" backend
from fireflyer.haiscale import hfreduce_hook

OUT = os.environ["HFR_OUT"]
RANK = int(os.environ["RANK"])
WORLD = int(os.environ["WORLD_SIZE"])
ODD = int(os.environ["HFR_ODD"])
VICTIM = int(os.environ["HFR_VICTIM"])
FAULT = os.environ["HFR_FAULT"]
TIMEOUT = datetime.timedelta(seconds=float(os.environ["HFR_PG_TIMEOUT_S"]))


def report(out: dict) -> None:
    path = os.path.join(OUT, f"faults-{RANK}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(path + ".tmp", path)


def timed(call) -> tuple[dict | None, float, BaseException | None]:
    """(error info or None, seconds the call took, the exception) of ``call()``."""
    t0 = time.monotonic()
    try:
        call()
        return None, time.monotonic() - t0, None
    except Exception as exc:
        return {"type": type(exc).__name__, "msg": str(exc), "at": time.time()}, time.monotonic() - t0, exc


def die_mid_collective(start) -> None:
    """Start a collective, then die (sigkill) or freeze (sigstop) while it is in flight."""
    start()
    time.sleep(0.01)  # long enough to be inside it, far shorter than its 64 MiB take
    with open(os.path.join(OUT, "fault-at"), "w") as f:
        f.write(repr(time.time()))
    os.kill(os.getpid(), signal.SIGKILL if FAULT == "sigkill" else signal.SIGSTOP)
    time.sleep(600)


def future_error(work) -> dict | None:
    """What ``work.get_future()`` carries once it is done."""
    fut = work.get_future()
    try:
        fut.wait()
        return None
    except Exception as exc:
        return {"type": type(exc).__name__, "msg": str(exc)}


def backend() -> tuple[dict, BaseException | None]:
    """init_process_group(backend="hfreduce", timeout=): Work.wait() and the future raise."""
    dist.init_process_group("hfreduce", timeout=TIMEOUT)
    out: dict = {"mismatch": {}, "future": {}}
    odd = RANK == ODD
    for name, t in {
        "size": torch.ones(1031 + odd),
        "dtype": torch.ones(1031, dtype=torch.bfloat16 if odd else torch.float32),
    }.items():
        w = dist.all_reduce(t, async_op=True)
        out["mismatch"][name] = timed(w.wait)[0]
        out["future"][name] = future_error(w)
    t = torch.full((1031,), float(RANK + 1))
    dist.all_reduce(t)
    out["usable"] = bool(torch.all(t == WORLD * (WORLD + 1) / 2))
    report(out)
    big = torch.zeros(1 << 24)
    if RANK == VICTIM:
        die_mid_collective(lambda: dist.all_reduce(big, async_op=True))
    w = dist.all_reduce(big, async_op=True)
    out["fault"], out["fault_s"], exc = timed(w.wait)
    out["future"]["fault"] = future_error(w)
    out["after"], out["after_s"], _ = timed(lambda: dist.all_reduce(torch.ones(8)))
    return out, exc


def make_model(width: int, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 4)).to(dtype)


def step(ddp: nn.Module, dtype: torch.dtype) -> None:
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(RANK)).to(dtype)
    ddp(x).float().square().sum().backward()


def hook() -> tuple[dict, BaseException | None]:
    """Stock DDP over gloo with hfreduce_hook: backward raises; the hook's timeout is the group's."""
    dist.init_process_group("gloo", timeout=TIMEOUT)
    out: dict = {"mismatch": {}}
    odd = RANK == ODD
    # init_sync=False: DDP would refuse these models itself; the hook must notice the difference.
    for name, (width, dtype) in {
        "size": (32 + odd, torch.float32),
        "dtype": (32, torch.bfloat16 if odd else torch.float32),
    }.items():
        ddp = nn.parallel.DistributedDataParallel(make_model(width, dtype), init_sync=False)
        ddp.register_comm_hook(None, hfreduce_hook)
        out["mismatch"][name] = timed(lambda ddp=ddp, dtype=dtype: step(ddp, dtype))[0]
        del ddp
    model = make_model(32, torch.float32)
    ddp = nn.parallel.DistributedDataParallel(model, init_sync=False)
    calls = {"n": 0}

    def dying_hook(state, bucket):  # unannotated: DDP checks annotations as objects
        calls["n"] += 1
        if RANK == VICTIM and calls["n"] == 2:
            die_mid_collective(lambda: None)  # while its peers are inside this bucket's allreduce
        return hfreduce_hook(state, bucket)

    ddp.register_comm_hook(None, dying_hook)
    step(ddp, torch.float32)
    import hfreduce

    out["usable"] = True
    out["hfreduce_timeout_s"] = hfreduce.get_timeout_s()
    report(out)
    out["fault"], out["fault_s"], exc = timed(lambda: step(ddp, torch.float32))
    out["after"], out["after_s"], _ = timed(lambda: hfreduce.allreduce(torch.ones(8)))
    return out, exc


def main() -> None:
    torch.set_num_threads(1)
    out, exc = {"backend": backend, "hook": hook}[sys.argv[1]]()
    report(out)
    if exc is not None:
        raise exc  # unhandled, as in a training script: the rank exits non-zero


if __name__ == "__main__":
    main()
