"""HFReduce as a communication hook of stock ``torch.nn.parallel.DistributedDataParallel``.

One line switches torch's DDP from its process group's allreduce to HFReduce::

    ddp.register_comm_hook(state=None, hook=hfreduce_hook)

Each gradient bucket is divided by the world size and summed in place by HFReduce, exactly as torch's
default ``allreduce_hook`` does over its process group; the returned future is completed by a
background thread when the HFReduce work finishes, so the reduction overlaps the rest of backward.
HFReduce is initialised on the first bucket if the program has not done so (every rank reaches the
first bucket in the same order, so the start-up allgather lines up across ranks), with the timeout of
the process group (``state``, else the default group: ``init_process_group(timeout=)``).
"""

# No ``from __future__ import annotations``: DDP's register_comm_hook compares the hook's annotations
# with dist.GradBucket and torch.futures.Future[torch.Tensor] as objects, not strings.
from typing import Any

import torch
import torch.distributed as dist

from fireflyer.haiscale._futures import future_of
from fireflyer.haiscale.errors import HaiScaleError


def group_timeout_s(group: object = None) -> float | None:
    """The timeout of ``group`` (a ProcessGroup; None: the default group) in seconds, None if unknown."""
    if not dist.is_initialized():
        return None
    pg = group if isinstance(group, dist.ProcessGroup) else dist.distributed_c10d._get_default_group()
    own = getattr(pg, "_timeout", None)  # the "hfreduce" backend's ProcessGroupHFReduce
    if own is not None:
        return own.total_seconds()
    try:
        return pg._get_backend(torch.device("cpu")).options._timeout.total_seconds()
    except (AttributeError, RuntimeError):
        return None


def _hfreduce(state: object) -> Any:
    import hfreduce

    if not hfreduce.is_initialized():
        # The process group's timeout (init_process_group(timeout=)) bounds every gradient allreduce.
        hfreduce.init(timeout_s=group_timeout_s(state))
    return hfreduce


def hfreduce_hook(state: object, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Average ``bucket``'s flat gradient buffer across ranks with HFReduce; ``state``: None or DDP's group.

    The buffer is reduced in place and the future's value is that same tensor, as DDP expects. If the
    allreduce fails (a peer died, stalled past the group's timeout, or passed another size or dtype) the
    future carries a ``CommunicationError`` and DDP's backward raises it.
    """
    hf = _hfreduce(state)
    buf = bucket.buffer()
    if buf.device.type != "cpu":
        raise HaiScaleError(
            f"hfreduce_hook: bucket {bucket.index()} is on {buf.device}; HFReduce reduces CPU tensors"
        )
    world = hf.get_world_size()
    buf.div_(world)  # before the sum, like torch's default hook: same rounding, no overflow of the sum
    work = hf.allreduce(buf, op="sum", async_op=True)
    return future_of([work], lambda: buf, f"rank {hf.get_rank()}: gradient bucket {bucket.index()}")
