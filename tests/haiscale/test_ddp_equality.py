"""HaiScale DDP reaches bit-for-bit the parameters of torch DDP + gloo, under a real mpirun."""

from __future__ import annotations

import pytest

from tests.haiscale.conftest import COMMS

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("comm", COMMS)
@pytest.mark.parametrize(
    ("np", "extra"),
    [
        # Two ranks: a*0.5 + b*0.5 is one commutative float32 addition, exact in any order.
        (2, []),
        (2, ["--gradient-as-bucket-view", "--no-overlap"]),
        # Four ranks: the sum of 4 float32 gradients depends on the order (gloo's ring vs HFReduce), so
        # gradients are rounded to multiples of 2**-16 in [-4, 4] (identically in both runs): exact sums.
        (4, ["--grad-quantum-bits", "16"]),
    ],
    ids=["np2", "np2-view-nooverlap", "np4-dyadic"],
)
def test_same_parameters_as_torch_ddp(run_mpi, comm, np, extra):
    argv = [
        "-m",
        "fireflyer.haiscale.train_example",
        "--comm",
        comm,
        "--steps",
        "12",
        "--bucket-cap-mb",
        "0.01",
    ]
    run = run_mpi(np, argv + extra, "HAISCALE_RESULT")
    assert run.rc == 0, run.log[-4000:]
    assert [r["rank"] for r in run.results] == list(range(np)), run.log[-4000:]
    for r in run.results:
        assert r["buckets"] >= 3  # several buckets, so ordering and overlap are exercised
        assert r["bit_equal"], f"rank {r['rank']}: {r['unequal_params']} differ (max {r['max_abs_diff']})"
        assert r["ranks_agree"]


@pytest.mark.parametrize("comm", COMMS)
def test_four_ranks_without_rounding_differ_only_by_summation_order(run_mpi, comm):
    """Without dyadic gradients, 4 ranks agree with each other and stay within float32 rounding of torch."""
    argv = [
        "-m",
        "fireflyer.haiscale.train_example",
        "--comm",
        comm,
        "--steps",
        "5",
        "--bucket-cap-mb",
        "0.01",
    ]
    run = run_mpi(4, argv, "HAISCALE_RESULT")
    assert run.rc == 0, run.log[-4000:]
    assert len(run.results) == 4
    for r in run.results:
        assert r["ranks_agree"]
        assert r["max_abs_diff"] < 1e-5
