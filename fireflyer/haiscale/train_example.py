"""Training example: a small CNN trained with torch DDP + gloo and with HaiScale DDP from the same seed.

Run under mpirun (or torchrun); every rank prints one ``HAISCALE_RESULT {json}`` line saying whether
the parameters after ``--steps`` steps are bit-for-bit equal between the two runs, and the parameter
digest, so the caller can also check that all ranks agree::

    mpirun -np 2 -x MASTER_PORT=29511 python -m fireflyer.haiscale.train_example --steps 20

With 4 ranks the float32 sum of 4 gradients depends on the summation order (gloo's ring and HFReduce
add in different orders). ``--grad-quantum-bits K`` rounds every gradient to a multiple of 2**-K,
clamped to [-4, 4], with a tensor hook applied identically to both runs: every partial sum is then a
multiple of 2**-(K+2) below 2**3, which float32 represents exactly when K + 5 <= 24, so any order
gives the same bits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from fireflyer.haiscale._comm import Communicator, HFReduceCommunicator, ProcessGroupCommunicator
from fireflyer.haiscale._env import export_torch_env
from fireflyer.haiscale.ddp import DistributedDataParallel


class SmallCNN(nn.Module):
    """Two conv layers and a classifier: ~25k parameters, enough for several buckets at a small cap."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def batch_for(step: int, rank: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic synthetic batch of ``rank`` at ``step``: images and labels."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 1009 + rank)
    x = torch.randn(batch, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    return x, y


def quantize_grads(model: nn.Module, bits: int) -> None:
    """Round each gradient to a multiple of 2**-bits in [-4, 4] before it is accumulated."""
    scale = float(2**bits)

    def hook(g: torch.Tensor) -> torch.Tensor:
        return torch.round(g.clamp(-4.0, 4.0) * scale) / scale

    for p in model.parameters():
        p.register_hook(hook)


def train(ddp: nn.Module, params: list[nn.Parameter], args: argparse.Namespace, rank: int) -> None:
    """``args.steps`` SGD-with-momentum steps on this rank's batches."""
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(args.steps):
        x, y = batch_for(step, rank, args.batch, args.seed)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(ddp(x), y)
        loss.backward()
        opt.step()


def make_model(args: argparse.Namespace) -> nn.Module:
    """The model with the same initial weights on every rank and in both runs (different on rank 0 only
    when ``--perturb-init`` is given, to show that DDP broadcasts rank 0's weights)."""
    torch.manual_seed(args.seed)
    model = SmallCNN()
    if args.grad_quantum_bits:
        quantize_grads(model, args.grad_quantum_bits)
    return model


def digest(params: list[torch.Tensor]) -> str:
    """sha256 of the parameters' bytes, to compare across ranks."""
    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Entry point (one rank)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument(
        "--bucket-cap-mb", type=float, default=0.02, help="small, so the CNN spans several buckets"
    )
    ap.add_argument(
        "--comm", choices=["hfreduce", "gloo"], default="hfreduce", help="HaiScale's communicator"
    )
    ap.add_argument("--grad-quantum-bits", type=int, default=0, help="0 = no rounding (see module doc)")
    ap.add_argument("--gradient-as-bucket-view", action="store_true")
    ap.add_argument("--no-overlap", action="store_true")
    args = ap.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    env = export_torch_env()
    if "MASTER_PORT" not in os.environ:
        print("MASTER_PORT must be set (for the gloo reference run)", file=sys.stderr)
        return 2
    dist.init_process_group("gloo", rank=env.rank, world_size=env.world_size)

    ref = make_model(args)
    torch_ddp = nn.parallel.DistributedDataParallel(ref, bucket_cap_mb=args.bucket_cap_mb)
    train(torch_ddp, list(ref.parameters()), args, env.rank)

    comm: Communicator = HFReduceCommunicator() if args.comm == "hfreduce" else ProcessGroupCommunicator()
    ours = make_model(args)
    hs_ddp = DistributedDataParallel(
        ours,
        comm,
        bucket_cap_mb=args.bucket_cap_mb,
        first_bucket_cap_mb=args.bucket_cap_mb,
        gradient_as_bucket_view=args.gradient_as_bucket_view,
        overlap=not args.no_overlap,
    )
    train(hs_ddp, list(ours.parameters()), args, env.rank)

    pairs = list(zip(ref.parameters(), ours.parameters(), strict=True))
    unequal = [
        n for (n, _), (a, b) in zip(ref.named_parameters(), pairs, strict=True) if not torch.equal(a, b)
    ]
    max_abs = max(float((a.detach() - b.detach()).abs().max()) for a, b in pairs)
    digests: list[str | None] = [None] * env.world_size
    dist.all_gather_object(digests, digest(list(ours.parameters())))
    result = {
        "rank": env.rank,
        "world_size": env.world_size,
        "comm": comm.name,
        "buckets": len(hs_ddp.bucket_indices),
        "steps": args.steps,
        "bit_equal": not unequal,
        "unequal_params": unequal,
        "max_abs_diff": max_abs,
        "ranks_agree": len(set(digests)) == 1,
        "digest": digests[env.rank],
        "grad_quantum_bits": args.grad_quantum_bits,
    }
    print("HAISCALE_RESULT " + json.dumps(result), flush=True)
    # Tear down the DDP wrappers (torch's reducer holds gloo work objects) before the process group.
    hs_ddp.close()
    del torch_ddp, hs_ddp, comm
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
