"""Assignment of parameters to gradient buckets, in the order their gradients become ready."""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_BUCKET_CAP_MB = 25.0
DEFAULT_FIRST_BUCKET_CAP_MB = 1.0


def assign_buckets(
    params: Sequence[torch.Tensor],
    bucket_cap_bytes: int,
    first_bucket_cap_bytes: int | None = None,
) -> list[list[int]]:
    """Group parameter indices into buckets of at most ~``bucket_cap_bytes`` each, like torch DDP.

    Parameters are visited in reverse definition order (backward produces the last layer's gradients
    first); a bucket holds one dtype and device and is closed once it reaches its cap, so one large
    parameter makes a bucket of its own. The first bucket is smaller so communication starts early.
    """
    if bucket_cap_bytes <= 0:
        raise ValueError(f"bucket_cap_bytes must be positive, got {bucket_cap_bytes}")
    first = bucket_cap_bytes if first_bucket_cap_bytes is None else first_bucket_cap_bytes
    if first <= 0:
        raise ValueError(f"first_bucket_cap_bytes must be positive, got {first}")
    buckets: list[list[int]] = []
    open_by_key: dict[tuple[torch.dtype, torch.device], tuple[list[int], int]] = {}
    for idx in reversed(range(len(params))):
        p = params[idx]
        key = (p.dtype, p.device)
        cur, size = open_by_key.get(key, ([], 0))
        cur.append(idx)
        size += p.numel() * p.element_size()
        cap = first if not buckets else bucket_cap_bytes
        if size >= cap:
            buckets.append(cur)
            open_by_key.pop(key, None)
        else:
            open_by_key[key] = (cur, size)
    # Leftover open buckets, ordered by when their first gradient is expected.
    leftovers = sorted((b for b, _ in open_by_key.values()), key=lambda b: -b[0])
    buckets.extend(leftovers)
    return buckets
