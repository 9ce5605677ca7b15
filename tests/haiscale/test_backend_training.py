"""Stock DDP and FSDP2 (``fully_shard``) train on ``backend="hfreduce"`` to gloo's parameters.

One spawned world per size (tests/haiscale/train_scenarios.py): the default group is HFReduce's, a
gloo group of the same ranks the reference; same model, seed and per-rank batches. np 2 must match
bit for bit (a+b is a+b in any order); np 4 runs as two "nodes" of two ranks, where the summation order
differs from gloo's ring, so within 1e-6. HFREDUCE_DEBUG=1 shows the work really went through
HFReduce's allgather and reduce_scatter (FSDP) and allreduce (DDP).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.haiscale.conftest import hfreduce_ready
from tests.hfreduce.conftest import RankLauncher, Topo

pytestmark = pytest.mark.skipif(not hfreduce_ready(), reason="hfreduce allreduce not built")
SCRIPT = Path(__file__).with_name("train_scenarios.py")


@pytest.mark.parametrize(("topo", "tol"), [pytest.param(Topo(2), 0.0, id="2r-1n"),
                                           pytest.param(Topo(4, lws=2), 1e-6, id="4r-2n")])  # fmt: skip
def test_ddp_and_fsdp_match_gloo(launcher, tmp_path, topo, tol):
    ranks = RankLauncher("env", launcher, tmp_path)
    env = {"HFREDUCE_DEBUG": "1", "OMP_NUM_THREADS": "1"}
    job = ranks.start(topo, "train", env=env, script=SCRIPT)
    res = job.wait(240)
    assert job.returncodes() == [0] * topo.np, job.logs()
    assert sorted(res) == list(range(topo.np)), job.logs()
    for r, rep in res.items():
        assert rep["backend"] == "hfreduce"
        assert rep["ddp_moved"] > 1e-3 and rep["fsdp_moved"] > 1e-3, f"rank {r}: training did not move: {rep}"
        assert rep["ddp_diff"] <= tol, f"rank {r}: DDP on hfreduce is {rep['ddp_diff']:.3g} from gloo"
        assert rep["fsdp_diff"] <= tol, f"rank {r}: FSDP on hfreduce is {rep['fsdp_diff']:.3g} from gloo"
        log = job.procs[r].log_text()
        for step in ("(a step of allgather of", "(a step of reduce_scatter of float32"):
            assert step in log, f"rank {r}: no {step} in the HFREDUCE_DEBUG log:\n{log[-3000:]}"
        assert "enter allreduce of" in log, f"rank {r}: DDP's gradients did not go through HFReduce"
