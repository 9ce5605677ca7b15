"""Faults through the native API: every survivor raises a specific hfreduce.errors exception in time.

One spawned world per (world, fault): a size and a dtype mismatch (MismatchError on every rank, the
communicator stays usable), then one rank is killed (SIGKILL) or stopped (SIGSTOP) mid-allreduce. Each
survivor raises CollectiveTimeoutError or PeerLostError naming that rank, within the timeout given to
``hfreduce.init(timeout_s=3)`` (HFREDUCE_TIMEOUT_S says 20), a later call raises at once, and the
survivors exit non-zero. HFREDUCE_DEBUG=1 logs every collective's entry and exit per rank. The checks live in conftest.check_fault_world, shared with the torch tests.
"""

from __future__ import annotations

import pytest

from tests.hfreduce.conftest import FAULT_WORLDS, PG_TIMEOUT_S, check_fault_world


@pytest.mark.parametrize(("topo", "fault", "victim"), FAULT_WORLDS)
def test_every_survivor_raises(env_ranks, launcher, topo, fault, victim):
    env = {"HFR_INIT_TIMEOUT_S": str(PG_TIMEOUT_S), "HFREDUCE_TIMEOUT_S": "20", "HFREDUCE_DEBUG": "1"}
    rep, job = check_fault_world(env_ranks, launcher, topo, fault, victim, env)
    for r, out in rep.items():
        assert out["fault"]["type"] in ("CollectiveTimeoutError", "PeerLostError"), (
            f"rank {r}: {out['fault']}"
        )
        assert out["after"]["type"] in ("CollectiveTimeoutError", "PeerLostError"), (
            f"rank {r}: {out['after']}"
        )
        for name in ("size", "dtype"):
            assert out["mismatch"][name]["type"] == "MismatchError", f"rank {r}: {out['mismatch'][name]}"
        # HFREDUCE_DEBUG=1: each collective's entry and exit, per rank, on stderr.
        log = job.procs[r].log_text()
        first = "allreduce of 1031 float32 elements, op=sum (collective #3)"  # the one after the mismatches
        assert f"hfreduce[rank {r}]: enter {first}" in log, log[-2000:]
        assert f"hfreduce[rank {r}]: exit {first} after " in log and ": ok" in log, log[-2000:]
        assert f"hfreduce[rank {r}]: exit allreduce of 16777216 float32" in log, log[-2000:]
