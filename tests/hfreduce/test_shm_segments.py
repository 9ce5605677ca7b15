"""The node's POSIX shared-memory segment never outlives its job: not after a clean exit, not after SIGKILL.

Ranks report what /proc/self/maps shows: the segment must already be unlinked ("(deleted)") while
the job runs, since the leader removes the name once every local rank has mapped it.
"""

from __future__ import annotations

import os
import time

from tests.hfreduce.conftest import Topo, hfreduce_segments

TOPO = Topo(4, lws=2)


def segment_names(res: dict[int, dict]) -> dict[int, str]:
    names = {}
    for r, rep in res.items():
        assert len(rep["maps"]) == 1, f"rank {r} maps {rep['maps']}"
        path, *rest = rep["maps"][0].split()
        assert rest == ["(deleted)"], f"rank {r}: segment {path} still has its name while the job runs"
        names[r] = os.path.basename(path)
    # Ranks of a node share one segment; the two nodes have one each.
    assert names[0] == names[1] != names[2] == names[3], names
    return names


def test_segments_removed_after_normal_exit(ranks):
    res = ranks.run(TOPO, "shm")
    assert all(rep["ok"] for rep in res.values())
    names = segment_names(res)
    assert not set(names.values()) & hfreduce_segments()


def test_segments_removed_after_sigkill_of_every_rank(env_ranks, launcher):
    job = env_ranks.start(TOPO, "shm", env={"HFR_HOLD": "1"})
    deadline = time.monotonic() + 60
    while len(job.results()) < TOPO.np:
        assert all(p.alive() for p in job.procs), job.logs()
        assert time.monotonic() < deadline, job.logs()
        time.sleep(0.1)
    res = job.results()
    names = segment_names(res)
    assert all(p.alive() for p in job.procs), job.logs()  # killed mid-allreduce, not after
    for p in job.procs:
        launcher.kill(p.name)
    assert [p.popen.returncode for p in job.procs] == [-9] * TOPO.np
    assert not set(names.values()) & hfreduce_segments()


def test_segment_unlinked_while_another_node_is_still_starting(env_ranks, launcher):
    """Node 0's segment loses its name as soon as node 0's ranks mapped it, not when the whole job is up.

    Rank 2 (node 1's leader) stalls before creating its node's segment, so init cannot finish; SIGKILLing
    every rank then must not leave node 0's segment behind.
    """
    job = env_ranks.start(TOPO, "shm", env={"HFR_INIT_DELAY_RANK": "2", "HFREDUCE_TIMEOUT_S": "30"})
    deadline = time.monotonic() + 30
    seen: list[str] = []
    while not any(line.endswith("(deleted)") for line in seen):
        seen = [line.strip() for line in _maps(job.procs[0].pid) if "/dev/shm/hfreduce-" in line]
        assert job.procs[0].alive(), job.logs()
        assert time.monotonic() < deadline, f"rank 0 maps {sorted(set(seen))}: the name was never removed"
        time.sleep(0.05)
    names = {os.path.basename(line.split()[5]) for line in seen}
    assert job.results() == {}, "init finished although rank 2 never created its segment"
    for p in job.procs:
        launcher.kill(p.name)
    assert not names & hfreduce_segments(), f"segments {names} leaked"


def _maps(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return f.readlines()
    except FileNotFoundError:
        return []
