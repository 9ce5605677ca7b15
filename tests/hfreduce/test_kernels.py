"""The SIMD reduction kernels alone (in this process): every ISA this CPU has against numpy, odd sizes, no overrun."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfreduce import _C

FEATURES = _C.cpu_features()
ISAS = ["scalar"]
if FEATURES["avx2"] and FEATURES["f16c"] and FEATURES["fma"]:
    ISAS.append("avx2")
if FEATURES["avx512f"] and FEATURES["avx512bw"]:
    ISAS.append("avx512")
DTYPES = {"float32": (0, torch.float32), "float16": (1, torch.float16), "bfloat16": (2, torch.bfloat16)}
SIZES = [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1021, 4099, 65537]
GUARD = 37


@pytest.fixture(params=ISAS)
def isa(request):
    assert _C.force_kernel_isa(request.param) == request.param
    yield request.param
    _C.force_kernel_isa("")


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_reduce_sum_against_numpy(isa, dtype, k):
    code, tdt = DTYPES[dtype]
    rng = np.random.default_rng([k, code])
    for n in SIZES:
        for offset in (0, 1):  # aligned and unaligned pointers
            for streaming in (False, True):
                ins = [
                    torch.from_numpy(rng.uniform(0.5, 1.5, n + offset).astype(np.float32)).to(tdt)
                    for _ in range(k)
                ]
                out = torch.full((n + offset + GUARD,), 7.0, dtype=tdt)
                ptrs = [t.data_ptr() + offset * t.element_size() for t in ins]
                _C.reduce_sum(code, out.data_ptr() + offset * out.element_size(), ptrs, n, streaming)
                exact = sum(t[offset:].to(torch.float64) for t in ins)
                got = out[offset : offset + n]
                what = f"{isa} {dtype} k={k} n={n} offset={offset} streaming={streaming}"
                if dtype == "float32":
                    torch.testing.assert_close(
                        got.to(torch.float64), exact, rtol=k * 2.0**-24, atol=0, msg=what
                    )
                else:  # accumulated in float32 (exact here) and rounded once
                    assert torch.equal(got, exact.to(torch.float32).to(tdt)), what
                assert bool((out[:offset] == 7).all() and (out[offset + n :] == 7).all()), (
                    f"{what}: wrote past the end"
                )


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_reduce_sum_in_place(isa, dtype):
    """out may be exactly one of the inputs (the intra-node stage reduces into a rank's own buffer)."""
    code, tdt = DTYPES[dtype]
    for n in (1, 17, 1031):
        a = torch.arange(n, dtype=torch.float32).remainder(97).to(tdt)
        b = torch.ones(n, dtype=tdt)
        want = a.to(torch.float32) + 1
        _C.reduce_sum(code, a.data_ptr(), [a.data_ptr(), b.data_ptr()], n, False)
        assert torch.equal(a, want.to(tdt)), f"{isa} {dtype} n={n}"


def test_kernel_isa_is_the_best_available():
    assert _C.kernel_isa() == ISAS[-1]


@pytest.mark.parametrize("n", range(1, 10))
def test_double_binary_tree_shape(n):
    """Both trees span every node once; only tree 0's root (it has a single child) may be interior in both."""
    interior, tree_roots = [], []
    for tree in (0, 1):
        links = {v: _C.dtree(n, v, tree) for v in range(n)}
        roots = [v for v, (parent, _, _) in links.items() if parent == -1]
        assert len(roots) == 1, (tree, links)
        tree_roots.append(roots[0])
        for v, (parent, *kids) in links.items():
            for kid in kids:
                if kid != -1:
                    assert links[kid][0] == v, (tree, v, kid, links)
            if parent != -1:
                assert v in links[parent][1:], (tree, v, links)
        seen, todo = set(), [roots[0]]
        while todo:
            v = todo.pop()
            assert v not in seen
            seen.add(v)
            todo += [kid for kid in links[v][1:] if kid != -1]
        assert seen == set(range(n))
        interior.append({v for v, (_, *kids) in links.items() if any(kid != -1 for kid in kids)})
    assert interior[0] & interior[1] <= {tree_roots[0]}, interior
    assert len(interior[0]) + len(interior[1]) <= n + 1, interior
