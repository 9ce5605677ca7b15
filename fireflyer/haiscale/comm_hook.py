"""HFReduce as a communication hook of stock ``torch.nn.parallel.DistributedDataParallel``.

One line switches torch's DDP from its process group's allreduce to HFReduce::

    ddp.register_comm_hook(state=None, hook=hfreduce_hook)

Each gradient bucket is divided by the world size and summed in place by HFReduce, exactly as torch's
default ``allreduce_hook`` does over its process group; the returned future is completed by a
background thread when the HFReduce work finishes, so the reduction overlaps the rest of backward.
HFReduce is initialised on the first bucket if the program has not done so (every rank reaches the
first bucket in the same order, so the start-up allgather lines up across ranks).
"""

# No ``from __future__ import annotations``: DDP's register_comm_hook compares the hook's annotations
# with dist.GradBucket and torch.futures.Future[torch.Tensor] as objects, not strings.
from typing import Any

import torch
import torch.distributed as dist

from fireflyer.haiscale._futures import future_of
from fireflyer.haiscale.errors import HaiScaleError


def _hfreduce() -> Any:
    import hfreduce

    if not hfreduce.is_initialized():
        hfreduce.init()
    return hfreduce


def hfreduce_hook(state: object, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Average ``bucket``'s flat gradient buffer across ranks with HFReduce; ``state`` is unused (pass None).

    The buffer is reduced in place and the future's value is that same tensor, as DDP expects.
    """
    hf = _hfreduce()
    buf = bucket.buffer()
    if buf.device.type != "cpu":
        raise HaiScaleError(
            f"hfreduce_hook: bucket {bucket.index()} is on {buf.device}; HFReduce reduces CPU tensors"
        )
    world = hf.get_world_size()
    buf.div_(world)  # before the sum, like torch's default hook: same rounding, no overflow of the sum
    work = hf.allreduce(buf, op="sum", async_op=True)
    return future_of([work], lambda: buf, f"rank {hf.get_rank()}: gradient bucket {bucket.index()}")
