"""Async checkpoints: the snapshot is taken at save time, survives later training steps, loads bit-exact."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
from torch import nn

from fireflyer.haiscale import checkpoint
from fireflyer.haiscale.train_example import batch_for, make_model
from fs3 import LocalCluster, LocalClusterConfig


def _step(model: nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    x, y = batch_for(step, 0, 8, 1234)
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = make_model(argparse.Namespace(seed=99, grad_quantum_bits=0))
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


@pytest.fixture(scope="module")
def fs3_client(tmp_path_factory):
    cfg = LocalClusterConfig(num_storage=1, replicas=1, num_chains=1, chunk_size=256 << 10)
    with LocalCluster(cfg, tmp_path_factory.mktemp("ckpt-fs3")) as c:
        yield c.client()


@pytest.fixture(params=["local", "fs3"])
def target(request, tmp_path):
    """(path, client): a local dir, or a directory in a real local fs3 cluster."""
    if request.param == "local":
        return str(tmp_path / "ckpts" / "step3.ckpt"), None
    return f"/ckpts-{os.getpid()}-{tmp_path.name}/step3.ckpt", request.getfixturevalue("fs3_client")


def test_save_async_snapshot_then_load(target):
    path, client = target
    model, opt = _fresh()
    for s in range(3):
        _step(model, opt, s)
    blob = torch.randn(2 << 20)  # 8 MiB in ``extra``: the write takes a while
    want_model = {k: v.clone() for k, v in model.state_dict().items()}
    want_momentum = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    want_blob = blob.clone()

    handle = checkpoint.save_async(path, model, opt, {"step": 3, "blob": blob}, client=client, rank=0)
    # Training goes on at once, mutating parameters, momentum and the extra tensor in place.
    for s in range(3, 6):
        _step(model, opt, s)
    blob.add_(1.0)
    stats = handle.wait()
    assert handle.done() and stats is not None and stats.num_tensors >= len(want_model)
    assert not torch.equal(model.state_dict()["head.3.weight"], want_model["head.3.weight"])

    fresh, fresh_opt = _fresh()
    extra = checkpoint.load(path, fresh, fresh_opt, client=client)
    assert extra["step"] == 3 and torch.equal(extra["blob"], want_blob)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, want_model[k]), k
    for p, m in zip(fresh.parameters(), want_momentum, strict=True):
        assert torch.equal(fresh_opt.state[p]["momentum_buffer"], m)
    assert fresh_opt.param_groups[0]["lr"] == 0.05 and fresh_opt.param_groups[0]["momentum"] == 0.9


def test_writer_error_surfaces_from_wait(tmp_path):
    """A failing background write does not raise in save_async; wait() re-raises the writer's error."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    model, opt = _fresh()
    handle = checkpoint.save_async(str(blocker / "sub" / "c.ckpt"), model, opt, rank=0)
    with pytest.raises((NotADirectoryError, FileExistsError)):
        handle.wait()
    assert handle.done()
    with pytest.raises((NotADirectoryError, FileExistsError)):
        handle.wait()  # keeps reporting it


def test_only_writer_rank_writes(tmp_path):
    model, opt = _fresh()
    handle = checkpoint.save_async(str(tmp_path / "c.ckpt"), model, opt, rank=1)
    assert handle.done() and handle.wait() is None
    assert not (tmp_path / "c.ckpt").exists()
