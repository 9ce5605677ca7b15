"""Two "nodes" in two network namespaces joined by veth pairs: the leaders talk over real TCP between hosts."""

from __future__ import annotations

import pytest

from ffcommon.ports import free_port
from fireflyer.netns import HostNet, NetnsUnavailable
from tests.hfreduce.conftest import Topo


@pytest.mark.netns
@pytest.mark.parametrize("algo", ["tree", "ring"])
def test_allreduce_across_network_namespaces(env_ranks, algo):
    try:
        net = HostNet(2).up()
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        # Same hostname in both namespaces: HFREDUCE_NODE_ID makes them two nodes (no shared segment).
        topo = Topo(2, algo=algo)
        env = {"MASTER_ADDR": net.address(0), "MASTER_PORT": str(free_port()), "HFR_QUICK": "1"}
        job = env_ranks.start(
            topo, "correct", env=env, prefix=lambda r: net.argv(r, ["env", f"HFREDUCE_NODE_ID=host{r}"])
        )
        res = job.wait(90)
        assert job.returncodes() == [0, 0], job.logs()
        assert sorted(res) == [0, 1], job.logs()
        for r, rep in res.items():
            assert "exception" not in rep, rep["exception"]["traceback"]
            assert rep["num_nodes"] == 2 and rep["local_world_size"] == 1
            assert rep["checks"] > 100 and rep["failures"] == [], f"rank {r}:\n" + "\n".join(rep["failures"])
    finally:
        net.down()
