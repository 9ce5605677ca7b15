"""One rank of stock torch training on ``backend="hfreduce"`` beside gloo: ``python train_scenarios.py train``.

The default group is HFReduce's; a gloo group of the same ranks is the reference. The same model,
seed and batches train with stock ``DistributedDataParallel`` and with FSDP2 (``fully_shard``) on each
group; the rank reports how far the parameters ended apart (0.0: bit for bit) in $HFR_OUT/rank-<r>.json.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

import fireflyer.haiscale  # noqa: F401 - registers the "hfreduce" backend

OUT = os.environ["HFR_OUT"]
RANK = int(os.environ["RANK"])
STEPS = 4


def make_model() -> nn.Module:
    torch.manual_seed(1234)  # the same initial parameters on every rank and for both groups
    return nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4))


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + RANK)  # each rank its own data
    return [(torch.randn(8, 16, generator=g), torch.randn(8, 4, generator=g)) for _ in range(STEPS)]


def train(model: nn.Module, params: list[torch.Tensor]) -> None:
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    for x, y in batches():
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def ddp(group: dist.ProcessGroup | None) -> list[torch.Tensor]:
    model = make_model()
    wrapped = nn.parallel.DistributedDataParallel(model, process_group=group, bucket_cap_mb=0.01)
    train(wrapped, list(model.parameters()))
    return [p.detach().clone() for p in model.parameters()]


def fsdp(group: dist.ProcessGroup | None) -> list[torch.Tensor]:
    from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = (
        init_device_mesh("cpu", (dist.get_world_size(),))
        if group is None
        else DeviceMesh.from_group(group, "cpu")
    )
    model = make_model()
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    train(model, list(model.parameters()))
    return [p.full_tensor().detach().clone() for p in model.parameters()]


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    dist.init_process_group("hfreduce", timeout=datetime.timedelta(seconds=60))
    gloo = dist.new_group(backend="gloo")
    out: dict = {"backend": dist.get_backend()}
    ref, ours = ddp(gloo), ddp(None)
    out["ddp_diff"] = max_diff(ref, ours)
    out["ddp_moved"] = max_diff(ref, [p.detach() for p in make_model().parameters()])
    ref, ours = fsdp(gloo), fsdp(None)
    out["fsdp_diff"] = max_diff(ref, ours)
    out["fsdp_moved"] = max_diff(ref, [p.detach() for p in make_model().parameters()])
    out["fsdp_vs_ddp"] = max_diff(ours, ddp(None))
    with open(os.path.join(OUT, f"rank-{RANK}.json"), "w") as f:
        json.dump(out, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
