"""Failures under a real mpirun: a rank raising in backward, unused parameters with and without the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.haiscale.conftest import COMMS

pytestmark = pytest.mark.mpi
SCENARIOS = str(Path(__file__).with_name("ddp_scenarios.py"))


@pytest.mark.parametrize("comm", COMMS)
def test_rank_raising_in_backward_gives_peers_an_error(run_mpi, comm):
    timeout_s = 4.0
    run = run_mpi(
        2,
        [SCENARIOS, "raise_in_backward", "--comm", comm, "--timeout-s", str(timeout_s), "--linger-s", "8"],
        "SCENARIO",
    )
    assert run.rc == 0, run.log[-4000:]
    by_rank = {r["rank"]: r for r in run.results}
    assert by_rank[1]["error"] == "RuntimeError" and "injected failure" in by_rank[1]["message"]
    # The failed rank refuses to go on: its backward stopped half-way.
    assert by_rank[1]["next_forward"] == "BackwardIncompleteError"
    # The healthy rank, whose peer is alive but silent, gets a CommunicationError naming the bucket.
    peer = by_rank[0]
    assert peer["step"] == 2 and peer["error"] == "CommunicationError", peer
    assert "rank 0" in peer["message"] and "bucket" in peer["message"]
    assert peer["next_forward"] == "CommunicationError"  # the error is sticky, no silent divergence


@pytest.mark.parametrize("comm", COMMS)
def test_unused_parameters_without_option_is_a_clear_error(run_mpi, comm):
    run = run_mpi(2, [SCENARIOS, "unused_strict", "--comm", comm], "SCENARIO")
    assert run.rc == 0, run.log[-4000:]
    assert len(run.results) == 2
    for r in run.results:
        assert r["error"] == "UnusedParametersError"
        assert "c.weight, c.bias" in r["message"] and "find_unused_parameters=True" in r["message"]
        assert r["next_forward"] == "UnusedParametersError"


@pytest.mark.parametrize("comm", COMMS)
def test_find_unused_parameters_matches_torch_ddp(run_mpi, comm):
    """``b`` is used on rank 0 only (globally used), ``c`` nowhere (its grad stays None, as in torch)."""
    run = run_mpi(2, [SCENARIOS, "unused_find", "--comm", comm], "SCENARIO")
    assert run.rc == 0, run.log[-4000:]
    assert len(run.results) == 2
    for r in run.results:
        assert r["params_equal"] and r["grads_none_match"] and r["grads_equal"], r
        assert r["none_grads"] == [False, False, False, False, True, True]
