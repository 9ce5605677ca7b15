"""Single-process checks of HaiScale DDP: bucket assignment, configuration errors, no_sync, hooks."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from ffcommon.ports import free_port
from fireflyer.haiscale import DistributedDataParallel, HaiScaleError, ProcessGroupCommunicator
from fireflyer.haiscale._buckets import assign_buckets


@pytest.fixture(scope="module")
def comm1():
    """A one-rank gloo group: the DDP logic runs for real, the allreduce is the identity."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield ProcessGroupCommunicator(timeout_s=10)
    dist.destroy_process_group()


def _params(*numels, dtype=torch.float32):
    return [torch.zeros(n, dtype=dtype) for n in numels]


@pytest.mark.parametrize(
    ("numels", "cap", "first", "expected"),
    [
        ([10, 10, 10, 10], 80, 40, [[3], [2, 1], [0]]),  # reverse order, small first bucket
        ([1, 100, 1], 40, 40, [[2, 1], [0]]),  # a bucket closes once it reaches the cap
        ([1, 1, 1], 1 << 20, 1 << 20, [[2, 1, 0]]),  # everything fits in one bucket
    ],
)
def test_assign_buckets(numels, cap, first, expected):
    assert assign_buckets(_params(*numels), cap, first) == expected


def test_assign_buckets_separates_dtypes():
    ps = [torch.zeros(4), torch.zeros(4, dtype=torch.float64), torch.zeros(4)]
    buckets = assign_buckets(ps, 1 << 20, 1 << 20)
    assert sorted(map(sorted, buckets)) == [[0, 2], [1]]


@pytest.mark.parametrize("cap", [0, -1])
def test_assign_buckets_rejects_bad_cap(cap):
    with pytest.raises(ValueError, match="bucket_cap_bytes"):
        assign_buckets(_params(4), cap)


def test_bad_configuration_names_the_field(comm1):
    with pytest.raises(HaiScaleError, match="bucket_cap_mb"):
        DistributedDataParallel(nn.Linear(2, 2), comm1, bucket_cap_mb=0)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(HaiScaleError, match="no parameters"):
        DistributedDataParallel(frozen, comm1)


def test_one_rank_matches_local_training_and_no_sync_accumulates(comm1):
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    model.load_state_dict(ref.state_dict())
    ddp = DistributedDataParallel(model, comm1, bucket_cap_mb=0.0001, first_bucket_cap_mb=0.0001)
    assert len(ddp.bucket_indices) >= 2
    x1, x2 = torch.randn(4, 8), torch.randn(4, 8)
    with ddp.no_sync():
        ddp(x1).sum().backward()
    ddp(x2).sum().backward()
    ddp.synchronize()
    ref(x1).sum().backward()
    ref(x2).sum().backward()
    for a, b in zip(ref.parameters(), model.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)
    ddp.close()


def test_optimizer_step_waits_for_gradients(comm1):
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    ddp = DistributedDataParallel(model, comm1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    ddp(torch.ones(2, 4)).sum().backward()
    assert ddp._pending  # backward returned with the allreduce possibly still in flight
    before = model.weight.detach().clone()
    opt.step()  # the global step pre-hook synchronizes first
    assert not ddp._pending
    assert torch.equal(model.weight.detach(), before - model.weight.grad)
    ddp.close()


def test_second_backward_without_forward_is_rejected(comm1):
    model = nn.Linear(4, 4)
    ddp = DistributedDataParallel(model, comm1)
    out = ddp(torch.ones(2, 4)).sum()
    out.backward(retain_graph=True)
    with pytest.raises(HaiScaleError, match="still being reduced"):
        out.backward()
    ddp.close()
