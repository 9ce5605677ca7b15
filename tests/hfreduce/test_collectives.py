"""allgather, reduce_scatter, all_to_all, gather and scatter through the native API, on real ranks.

Values are checked bit for bit (the non-float dtypes carry arbitrary bit patterns, NaN payloads of
float64 included) or, for reduce_scatter's sums, within float rounding; then each collective is called
with one rank's size, dtype or root differing: every rank raises MismatchError naming that rank, and
the communicator still works. np 4 runs as two "nodes" of two ranks (steps cross the TCP tree).
"""

from __future__ import annotations

import pytest

from tests.hfreduce.conftest import Topo

CASES = [
    pytest.param(Topo(2), 1, id="2r-1n-odd1"),
    pytest.param(Topo(4, lws=2), 2, id="4r-2n-odd2"),
]


@pytest.mark.parametrize(("topo", "odd"), CASES)
def test_collectives_and_their_mismatches(env_ranks, topo, odd):
    res = env_ranks.run(topo, "collectives", env={"HFR_ODD": str(odd)}, timeout_s=120)
    for r, rep in res.items():
        assert rep["checks"] > 100 and not rep["failures"], f"rank {r}: {rep['failures']}"
        for name, err in rep["mismatch"].items():
            assert err is not None, f"rank {r}: {name}: a mismatched call succeeded"
            assert err["type"] == "MismatchError", f"rank {r}: {name}: {err}"
            assert f"rank {odd}" in err["msg"], f"rank {r}: {name}: {err['msg']}"
        assert "a step of allgather of int64" in rep["mismatch"]["allgather-int64"]["msg"]
        assert "gather of float32, root 1" in rep["mismatch"]["gather-root"]["msg"]
        assert [ok for _, ok in rep["after"]] == [True] * len(rep["after"]), f"rank {r}: {rep['after']}"
