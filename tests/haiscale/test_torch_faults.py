"""HFReduce failures inside stock torch: the "hfreduce" backend and DDP's hfreduce_hook raise on every rank.

For each (API, world, fault), one spawned world (tests/haiscale/fault_scenarios.py) runs: a size and
a dtype mismatch (every rank raises MismatchError; the backend's Work.wait() and its future carry it,
DDP's backward raises), then one rank is killed (SIGKILL) or stopped (SIGSTOP) in the middle of an
allreduce: every survivor raises within the process group's timeout (3 s, while HFREDUCE_TIMEOUT_S
says 20) plus 5 s, a later call raises at once, and the survivors exit non-zero. np 4 runs as two
"nodes" of two local ranks (HFREDUCE_LOCAL_WORLD_SIZE=2), so faults also cross the TCP tree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.haiscale.conftest import hfreduce_ready
from tests.hfreduce.conftest import FAULT_WORLDS, PG_TIMEOUT_S, RankLauncher, check_fault_world

pytestmark = pytest.mark.skipif(not hfreduce_ready(), reason="hfreduce allreduce not built")
SCRIPT = Path(__file__).with_name("fault_scenarios.py")


@pytest.mark.parametrize("api", ["backend", "hook"])
@pytest.mark.parametrize(("topo", "fault", "victim"), FAULT_WORLDS)
def test_every_survivor_raises(launcher, tmp_path, api, topo, fault, victim):
    ranks = RankLauncher("env", launcher, tmp_path)
    env = {"HFR_PG_TIMEOUT_S": str(PG_TIMEOUT_S), "HFREDUCE_TIMEOUT_S": "20", "OMP_NUM_THREADS": "1"}
    rep, _ = check_fault_world(ranks, launcher, topo, fault, victim, env, script=SCRIPT, scenario=api)
    for r, out in rep.items():
        if api == "backend":
            # torch's Work.wait() raised it and get_future() carries the same error class.
            assert out["future"]["fault"]["type"] == out["fault"]["type"], f"rank {r}: {out['future']}"
            for name in ("size", "dtype"):
                assert out["future"][name]["type"] == "MismatchError", f"rank {r}: {out['future']}"
        else:
            assert out["hfreduce_timeout_s"] == PG_TIMEOUT_S, (
                f"rank {r}: the hook ignored the group's timeout"
            )
