"""Results against numpy: every dtype, odd sizes, 1-4 ranks on 1-4 "nodes", tree and ring, both launchers.

One job per topology checks ~800 collectives (see rank_script.scenario_correct): allreduce sum/avg of
numpy arrays, torch CPU tensors and shared-segment buffers, sync and several in flight, broadcast
and reduce from every root, and barrier.
"""

from __future__ import annotations

import pytest

from tests.hfreduce.conftest import Topo

# (launcher, topology): every topology under the env-var launcher, a spread of them under mpirun.
ENV_TOPOS = [
    Topo(1),
    Topo(2),
    Topo(3, chunk_bytes=12288, depth=2),
    Topo(4),
    Topo(2, lws=1, algo="tree"),
    Topo(3, lws=1, algo="ring", chunk_bytes=12288),
    Topo(4, lws=2, algo="tree"),
    Topo(4, lws=2, algo="ring", depth=2),
]
MPI_TOPOS = [Topo(1), Topo(3), Topo(2, lws=1, algo="ring"), Topo(4, lws=2, algo="tree")]
CASES = [pytest.param("env", t, id=f"env-{t.id}") for t in ENV_TOPOS] + [
    pytest.param("mpirun", t, id=f"mpirun-{t.id}", marks=pytest.mark.mpi) for t in MPI_TOPOS
]


@pytest.mark.parametrize(("ranks", "topo"), CASES, indirect=["ranks"])
def test_collectives_match_numpy(ranks, topo):
    res = ranks.run(topo, "correct", timeout_s=120)
    for r, rep in res.items():
        assert rep["rank"] == r == rep["env_rank"]
        assert rep["world_size"] == topo.np
        assert rep["num_nodes"] == topo.num_nodes
        assert rep["local_world_size"] == (topo.lws or topo.np)
        assert rep["local_rank"] == r % (topo.lws or topo.np)
        assert rep["before_init"] is not None and rep["before_init"]["type"] == "UsageError", rep[
            "before_init"
        ]
        assert "not initialised" in rep["before_init"]["msg"]
        assert rep["checks"] > 700, rep["checks"]
        assert rep["failures"] == [], f"rank {r}:\n" + "\n".join(rep["failures"])
        assert rep["finalized"]
