"""A rank that dies or stalls mid-collective: every survivor raises, naming it, instead of hanging.

Env-var launcher only: mpirun itself kills the whole job once one rank exits without MPI_Finalize.
HFREDUCE_TIMEOUT_S is 3 s; a survivor that waited for the default 30 s would overrun the 25 s
the test waits for it.
"""

from __future__ import annotations

import pytest

from tests.hfreduce.conftest import Topo, hfreduce_segments

# (topology, victim rank, how it fails): local death (pid check), local stall (timeout), a remote
# node's leader lost (TCP), a remote node's non-leader dying (abort forwarded between leaders), a
# stalled rank of a ring.
CASES = [
    pytest.param(Topo(3), 1, "sigkill", id="3r-1n-sigkill-1"),
    pytest.param(Topo(2), 0, "stall", id="2r-1n-stall-0"),
    pytest.param(Topo(2, lws=1), 1, "exit", id="2r-2n-exit-1"),
    pytest.param(Topo(4, lws=2), 3, "sigkill", id="4r-2n-sigkill-3"),
    pytest.param(Topo(3, lws=1, algo="ring"), 2, "stall", id="3r-3n-ring-stall-2"),
]


@pytest.mark.parametrize(("topo", "victim", "how"), CASES)
def test_survivors_raise_naming_the_lost_rank(env_ranks, launcher, topo, victim, how):
    before = hfreduce_segments()
    job = env_ranks.start(
        topo, "crash", env={"HFREDUCE_TIMEOUT_S": "3", "HFR_VICTIM": str(victim), "HFR_HOW": how}
    )
    survivors = [r for r in range(topo.np) if r != victim]
    res = job.wait(25, ranks=survivors)
    for r in survivors:
        assert job.procs[r].popen.returncode == 0, job.logs()
        rep = res.get(r)
        assert rep is not None and "exception" not in rep, f"rank {r}: {rep}\n{job.logs()}"
        assert rep["warmup_ok"]
        err = rep["error"]
        assert err is not None, f"rank {r}: the collective succeeded without rank {victim}"
        assert err["type"] in ("CollectiveTimeoutError", "PeerLostError"), f"rank {r}: {err}"
        assert f"rank {victim}" in err["msg"], (
            f"rank {r}: the error does not name rank {victim}: {err['msg']}"
        )
        after = rep["after"]
        assert after is not None and after["hfreduce"], f"rank {r}: the failed communicator still ran {after}"
        assert rep["finalized"]
    if how == "stall":
        assert job.procs[victim].alive()
        launcher.kill(job.procs[victim].name)
    else:
        job.procs[victim].popen.wait(timeout=10)
        assert job.procs[victim].popen.returncode == (3 if how == "exit" else -9)
    assert hfreduce_segments() <= before, "a crashed job left its segment in /dev/shm"
