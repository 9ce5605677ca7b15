"""The simulator replays a trace through the real policy (small size here; the big run is in the report)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from haiplatform import sim
from haiplatform.scheduler import policy


def test_simulator_calls_the_real_policy():
    assert sim.schedule is policy.schedule


@pytest.mark.parametrize("backfill", [True, False])
def test_small_simulation_finishes_every_job_and_keeps_the_rules(backfill):
    cfg = sim.SimConfig(nodes=48, jobs=400, load=1.1, seed=3, backfill=backfill)
    trace = sim.make_trace(cfg)
    res = sim.simulate(cfg, trace)
    assert res.completed == len(trace) == 400
    assert res.rule_violations == 0
    assert res.preemptions > 0 and res.decays > 0
    assert 0 < res.utilization <= res.occupancy <= 1.0
    assert all(w >= 0 for ws in res.wait_s.values() for w in ws)
    assert sum(len(w) for w in res.wait_s.values()) == 400
    # Preemption buys HIGH jobs a shorter wait than LOW ones on the same trace.
    mean = {p: sum(w) / len(w) for p, w in res.wait_s.items() if w}
    assert mean[int(policy.Priority.HIGH)] < mean[int(policy.Priority.LOW)]
    again = sim.simulate(cfg, sim.make_trace(cfg))
    assert (again.makespan_s, again.preemptions) == (res.makespan_s, res.preemptions)  # seeded, deterministic


def test_sim_cli_prints_table_and_rejects_bad_flags():
    out = subprocess.run(
        [sys.executable, "-m", "haiplatform.sim", "--nodes", "16", "--jobs", "100", "--no-scale"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "utilization" in out.stdout and "HIGH" in out.stdout and "decision time" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "haiplatform.sim", "--nodes", "0"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "--nodes must be a positive integer" in bad.stderr
