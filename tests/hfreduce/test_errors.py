"""Errors a caller can make: ranks that disagree (MismatchError everywhere) and bad local input (UsageError).

After each of them the communicator must still work (rank_script.scenario_errors runs a checked
allreduce after every case).
"""

from __future__ import annotations

import pytest

from tests.hfreduce.conftest import Topo

# (launcher, topology, the rank whose call differs)
CASES = [
    pytest.param("env", Topo(2), 1, id="env-2r-1n-odd1"),
    pytest.param("env", Topo(2, lws=1), 1, id="env-2r-2n-odd1"),
    pytest.param("env", Topo(4, lws=2), 3, id="env-4r-2n-odd3"),
    pytest.param("mpirun", Topo(3), 0, id="mpirun-3r-1n-odd0", marks=pytest.mark.mpi),
    pytest.param(
        "mpirun", Topo(4, lws=2, algo="ring"), 2, id="mpirun-4r-2n-ring-odd2", marks=pytest.mark.mpi
    ),
]

# What the message must say besides the odd rank: the value that differed.
MISMATCH_DETAIL = {
    "count": "1032",
    "dtype": "float16",
    "op": "avg",
    "root": "root=1",
    "kind": "broadcast",
    "async-count": "2055",
}


@pytest.mark.parametrize(("ranks", "topo", "odd"), CASES, indirect=["ranks"])
def test_mismatch_and_usage_errors(ranks, topo, odd):
    res = ranks.run(topo, "errors", env={"HFR_ODD": str(odd)}, timeout_s=90)
    for r, rep in res.items():
        for name, detail in MISMATCH_DETAIL.items():
            err = rep["mismatch"][name]
            assert err is not None, f"rank {r}: {name} mismatch raised nothing"
            assert err["type"] == "MismatchError", f"rank {r}: {name}: {err}"
            assert f"rank {odd}" in err["msg"] and detail in err["msg"], f"rank {r}: {name}: {err['msg']}"
        # Every rank asks for a root that does not exist: an error everywhere, not a hang.
        oor = rep["mismatch"]["root-out-of-range"]
        assert oor is not None and oor["hfreduce"] and f"root {topo.np}" in oor["msg"], f"rank {r}: {oor}"
        assert [ok for _, ok in rep["after"]] == [True] * len(rep["after"]), f"rank {r}: {rep['after']}"
        assert len(rep["after"]) == len(rep["mismatch"]) + 1
        for name, err in rep["usage"].items():
            assert err is not None, f"rank {r}: {name} was accepted"
            assert err["type"] == "UsageError", f"rank {r}: {name}: {err}"
            assert f"rank {r}" in err["msg"], f"rank {r}: {name}: {err['msg']}"
        for dtype in ("int64", "float64", "int32"):
            key = "torch-int32" if dtype == "int32" else dtype
            assert dtype in rep["usage"][f"allreduce:{key}"]["msg"]
        assert "contiguous" in rep["usage"]["reduce:non-contiguous"]["msg"]
        assert "contiguous" in rep["usage"]["broadcast:torch-non-contiguous"]["msg"]
        assert "read-only" in rep["usage"]["allreduce:read-only"]["msg"]
        assert "max" in rep["usage"]["op=max"]["msg"]
